"""The argument parser. Kept free of heavy imports so `flowrun --help` is instant."""

from __future__ import annotations

import argparse


def _run_choices(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", help="sandbox profile (default: the Flow's own; a repositoryId param picks one)")
    p.add_argument("--mode", choices=["interactive", "background"], help="execution mode (default: the Flow's)")
    p.add_argument("--checkpoints", choices=["template", "every", "none"],
                   help="checkpoint mode: the Flow's own, pause before every step, or none")
    p.add_argument("-y", "--yes", action="store_true", help="approve checkpoints automatically (scripts, CI)")
    p.add_argument("-q", "--quiet", action="store_true", help="do not print tool output")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowrun", description="Durable, reviewable agent Flow runs.")
    parser.add_argument("--debug", action="store_true", help="verbose logging")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    p = sub.add_parser("demo", help="run the bundled Full SDLC Flow offline, with a checkpoint")
    _run_choices(p)
    p.add_argument("--open", action="store_true", help="also open the run page (printed either way) in a browser")
    p.set_defaults(handler="demo")

    p = sub.add_parser("flows", help="list Flows and their parameters")
    p.set_defaults(handler="flows")

    p = sub.add_parser("run", help="start a run of a Flow and follow it")
    p.add_argument("flow")
    p.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--record", help="launch from a record (plan or initiative id); its context is in scope")
    p.add_argument("--open", action="store_true",
                   help="print the run page's URL and open it in a browser (pages are served by `flowrun serve`)")
    _run_choices(p)
    p.set_defaults(handler="run")

    p = sub.add_parser("runs", help="list runs, newest first")
    p.add_argument("--status", action="append", help="filter by status (repeatable)")
    p.add_argument("--flow")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(handler="runs")

    p = sub.add_parser("show", help="a run's summary and timeline")
    p.add_argument("run_id")
    p.add_argument("--transcript", action="store_true", help="print the whole transcript too")
    p.add_argument("--outputs", action="store_true",
                   help="each step's summary, artifacts, raw structured output and auto-resolved calls")
    p.add_argument("--json", action="store_true", help="the run as JSON")
    p.set_defaults(handler="show_run")

    p = sub.add_parser("watch", help="follow a run live until it parks")
    p.add_argument("run_id")
    p.add_argument("--from-start", action="store_true", help="replay the whole transcript first")
    p.add_argument("--server", metavar="URL", help="follow it on a `flowrun serve` elsewhere (e.g. http://host:8765)")
    p.add_argument("--token", help="bearer token for --server (default: $FLOWRUN_TOKEN)")
    p.set_defaults(handler="watch")

    for name, help_text in (("approve", "approve the checkpoint and continue"),
                            ("reject", "reject at the checkpoint and stop the run"),
                            ("skip", "skip the paused step and continue")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("run_id")
        p.add_argument("-m", "--comment", default="")
        p.add_argument("--step", help="the step you are deciding (name or number); refuses if stale")
        p.add_argument("--decision-id", help="idempotency key: repeating it returns the first answer")
        p.add_argument("-y", "--yes", action="store_true", help="approve later checkpoints automatically")
        p.set_defaults(handler="decide", decision=name)

    p = sub.add_parser("resume", help="resume a blocked or cancelled run")
    p.add_argument("run_id")
    p.add_argument("-y", "--yes", action="store_true")
    p.set_defaults(handler="resume")

    p = sub.add_parser("retry", help="retry a failed or interrupted run")
    p.add_argument("run_id")
    p.add_argument("--clone", action="store_true", help="as a fresh run linked by the retry chain")
    p.add_argument("-y", "--yes", action="store_true")
    p.set_defaults(handler="retry")

    p = sub.add_parser("cancel", help="cancel a running or paused run")
    p.add_argument("run_id")
    p.set_defaults(handler="cancel")

    p = sub.add_parser("chat", help="talk to the chat agent: start Flows, decide checkpoints, in words or /commands")
    p.add_argument("--chat", metavar="CHAT_ID", help="continue this chat (default: a new one)")
    p.add_argument("--model", help="the chat model (default: FLOWRUN_CHAT_MODEL, else FLOWRUN_MODEL; scripted offline)")
    p.add_argument("-m", "--message", action="append", default=[], metavar="TEXT",
                   help="send these messages in order (each waits for the runs to park), then leave")
    p.set_defaults(handler="chat:chat")

    from .server_commands import add_server_commands

    add_server_commands(sub)
    from .db_commands import add_db_commands
    from .worker import add_worker_command

    add_db_commands(sub)
    add_worker_command(sub)
    p = sub.add_parser("health", help="open health events (why runs are blocked on their environment)")
    p.add_argument("--all", action="store_true", help="resolved ones too")
    p.add_argument("--resolve", metavar="EVENT_ID", help="mark a health event resolved (then resume the run)")
    p.set_defaults(handler="health")

    p = sub.add_parser("schedules", help="Flows on a schedule: next fire times; pause or resume one")
    p.add_argument("action", nargs="?", choices=["list", "pause", "resume"], default="list")
    p.add_argument("flow", nargs="?", help="the Flow to pause or resume")
    p.set_defaults(handler="triggers:schedules")

    p = sub.add_parser("plans", help="plans and initiatives: the records a run can be launched from")
    plans = p.add_subparsers(title="actions", metavar="ACTION", dest="action")
    p.set_defaults(handler="records:plans", action="list", kind="plan", kind_given=False)
    q = plans.add_parser("list", help="plans and initiatives, newest first")
    q.add_argument("--kind", choices=["plan", "initiative"])
    q.set_defaults(kind_given=True)
    for name, text in (("add", "create a plan or initiative"), ("update", "change one")):
        q = plans.add_parser(name, help=text)
        if name == "update":
            q.add_argument("id")
            q.add_argument("--link", action="append", help="add a link (repeatable)")
        else:
            q.add_argument("--kind", choices=["plan", "initiative"], default="plan")
        q.add_argument("--title", required=name == "add")
        q.add_argument("--body")
        q.add_argument("--body-file", help="read the body from a file ('-': standard input)")
        q.add_argument("--repository", help="owner/name, as a sandbox profile's repository_id")
        q.add_argument("--status", choices=["draft", "active", "done", "archived"])
    q = plans.add_parser("show", help="one record, with its body")
    q.add_argument("id")

    p = sub.add_parser("integrations", help="connect GitHub: cloning private repositories, opening pull requests")
    p.add_argument("action", nargs="?", choices=["list", "connect", "disconnect"], default="list")
    p.add_argument("service", nargs="?", choices=["github"], default="github")
    p.add_argument("--token-stdin", action="store_true", help="read the token from standard input")
    p.add_argument("--actor", help="whose token this is (default: the local operator)")
    p.set_defaults(handler="integrations:integrations")

    p = sub.add_parser("notifications", help="what runs told you: checkpoints, blocks, failures, completions")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(handler="triggers:notifications")

    return parser
