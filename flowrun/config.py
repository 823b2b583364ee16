"""Settings from the environment, and the wiring that turns them into a running engine.

Everything works with no key and no network: the scripted model and the local sandbox are the
defaults; real providers switch on from configuration (`FLOWRUN_MODEL`, the usual API keys).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .flows.enums import Plan
from .flows.errors import UsageError
from .flows.profiles import RepositorySpec, SandboxProfile
from .flows.redact import Redactor
from .llm.base import ModelProvider
from .runtime.catalog import Catalog
from .runtime.context import EngineConfig, EngineDeps
from .runtime.engine import Engine
from .runtime.integrations import GitHub
from .runtime.tools.base import Tool
from .sandboxes.base import SandboxBackend

PACKAGE_DIR = Path(__file__).resolve().parent
EXAMPLES_DIR = PACKAGE_DIR.parent / "examples"
SECRET_ENV_VARS = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "E2B_API_KEY", "GITHUB_TOKEN", "FLOWRUN_TOKEN")


@dataclass
class Settings:
    home: Path
    catalog_dirs: list[Path]
    scripts_dir: Path
    model: str = "scripted"
    plan: Plan = Plan.BUSINESS
    step_timeout_s: float = 3600.0
    public_url: str = "http://127.0.0.1:8765"
    secrets: list[str] = field(default_factory=list)
    env: Mapping[str, str] = field(default_factory=dict)
    database_url: str | None = None  # FLOWRUN_DATABASE_URL: postgresql://... or a SQLite file
    # who drives runs (runtime/leases.py): `flowrun worker` and `serve` always, a CLI command or
    # `flowrun mcp` only when no worker is alive ("auto"), `serve --no-drive` never
    drive: str = "auto"
    engine_kind: str = "cli"
    lease_s: float = 10.0  # FLOWRUN_LEASE_S: a dead driver's runs are taken over after about this

    @property
    def db_path(self) -> Path:
        return self.home / "flowrun.db"

    @property
    def sandbox_root(self) -> Path:
        """Where local workspaces live (moved out of a home the sandbox uid cannot enter)."""
        configured = self.env.get("FLOWRUN_SANDBOX_ROOT")
        return Path(configured).expanduser() if configured else self.home / "sandboxes"

    @property
    def database(self) -> str:
        """Where runs are stored: `FLOWRUN_DATABASE_URL`, else `$FLOWRUN_HOME/flowrun.db`."""
        return self.database_url or str(self.db_path)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        home = Path(env.get("FLOWRUN_HOME") or Path.home() / ".flowrun").expanduser()
        dirs = [Path(p).expanduser() for p in env.get("FLOWRUN_PATH", "").split(os.pathsep) if p]
        try:
            plan = Plan(env.get("FLOWRUN_PLAN", "business").lower())
        except ValueError:
            raise UsageError(f"FLOWRUN_PLAN must be one of {', '.join(p.value for p in Plan)}") from None
        return cls(
            home=home,
            catalog_dirs=[EXAMPLES_DIR, *dirs],
            scripts_dir=Path(env.get("FLOWRUN_SCRIPTS") or EXAMPLES_DIR / "scripts"),
            model=env.get("FLOWRUN_MODEL", "scripted"),
            plan=plan,
            step_timeout_s=float(env.get("FLOWRUN_STEP_TIMEOUT", "3600")),
            public_url=env.get("FLOWRUN_PUBLIC_URL", "http://127.0.0.1:8765").rstrip("/"),
            secrets=[env[k] for k in SECRET_ENV_VARS if env.get(k)]
            + [s for s in env.get("FLOWRUN_SECRETS", "").split(",") if s],
            env=env,
            database_url=env.get("FLOWRUN_DATABASE_URL") or None,
            lease_s=_positive(env, "FLOWRUN_LEASE_S", 10.0),
        )


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UsageError(f"{name} must be a number of seconds > 0, got {raw!r}")
    return value


def ensure_demo_remote(home: Path) -> Path:
    """The demo's "GitHub": a bare git repository made from the bundled sample, once."""
    remote = home / "demo" / "insights.git"
    if (remote / "HEAD").exists():
        return remote
    if shutil.which("git") is None:
        raise UsageError("the demo needs git on PATH (apt-get install -y git)")
    source = EXAMPLES_DIR / "sample-repo"
    work = home / "demo" / "seed"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(source, work)
    git = ["git", "-c", "user.name=flowrun", "-c", "user.email=flowrun@localhost", "-c", "init.defaultBranch=main"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "Initial commit"]):
        subprocess.run([*git, *args], cwd=work, check=True, capture_output=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(remote)], check=True, capture_output=True)
    shutil.rmtree(work, ignore_errors=True)
    return remote


def demo_profile(home: Path) -> SandboxProfile:
    return SandboxProfile(
        name="demo",
        description="The local sandbox with the bundled sample repository (orcette/insights).",
        backend="local",
        repositories=[RepositorySpec(url=str(home / "demo" / "insights.git"), path="insights")],
        repository_id="orcette/insights",
        tools=["git", "python3"],
    )


def load_catalog(settings: Settings) -> Catalog:
    catalog = Catalog.load(settings.catalog_dirs)
    if "demo" not in catalog.profiles:
        catalog.profiles["demo"] = demo_profile(settings.home)
    return catalog


def make_provider_for(settings: Settings) -> Callable[[str], ModelProvider]:
    """Models by name; the offline scripted model reads the configured scripts directory."""
    from .llm.registry import provider_for

    env = {**settings.env, "FLOWRUN_SCRIPTS": str(settings.scripts_dir)}
    return lambda model: provider_for(model, settings=env)


@dataclass
class _Backends:
    root: Path
    options: Mapping[str, str]
    github: GitHub | None = None
    cache: dict[tuple[str, str | None], SandboxBackend] = field(default_factory=dict)

    def __call__(self, name: str) -> SandboxBackend:
        # the operator's connected GitHub token clones private repositories; connecting (or
        # reconnecting) while the server runs takes effect for the next sandbox
        token = self.github.token_for("local") if self.github is not None else None
        if (name, token) not in self.cache:
            from .sandboxes import get_backend

            env = {**self.options, "GITHUB_TOKEN": token} if token else self.options
            options = {} if name == "noop" else {"env": env}
            self.cache[(name, token)] = get_backend(name, root=self.root, **options)
        return self.cache[(name, token)]


def make_redactor(settings: Settings, extra: Sequence[str] = ()) -> Redactor:
    """Configured secret values (and `extra`, e.g. connected integration tokens) and the common
    key formats: never stored, never sent."""
    return Redactor([*settings.secrets, *extra])


@asynccontextmanager
async def open_engine(settings: Settings, *, catalog: Catalog | None = None) -> AsyncIterator[Engine]:
    """The store, the catalog and the engine, ready; closed in order on exit."""
    from .logredact import redact_logs
    from .storage.factory import open_store
    from .storage.private import private_dir

    private_dir(settings.home)
    catalog = catalog or load_catalog(settings)
    github = GitHub.from_env(settings.env, settings.home)
    redactor = make_redactor(settings, extra=github.tokens())
    redact_logs(redactor)
    async with open_store(settings.database, redactor=redactor) as store:
        deps = EngineDeps(
            store=store,
            catalog=catalog,
            backend_for=_Backends(settings.sandbox_root, settings.env, github),
            provider_for=make_provider_for(settings),
            tools=_tools(),
            config=EngineConfig(
                default_model=settings.model, default_plan=settings.plan, step_timeout_s=settings.step_timeout_s,
                run_url=settings.public_url + "/runs/{run_id}", snapshot_dir=settings.home / "snapshots",
                drive=settings.drive, kind=settings.engine_kind, lease_s=settings.lease_s,
            ),
            redactor=redactor,
            github=github,
        )
        async with Engine(deps) as engine:
            yield engine


def _tools() -> dict[str, Tool]:
    from .runtime.tools import builtin_tools

    return builtin_tools()
