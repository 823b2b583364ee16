"""Layer 3: chats. A person talks to the chat agent, whose tools are flowrun's own MCP tools
(reached through a real MCP client session over an in-memory transport); the runs it starts are
followed and their checkpoints and endings come back as notes. Stored in the runs' event log.

Importing this package is cheap; `mcp` loads when a chat session opens.
"""

from ..flows.chat import Chat, ChatRole, NoteKind, ReplyStatus
from .commands import HELP as COMMANDS_HELP
from .commands import Command, parse_command
from .service import ChatService

__all__ = ["COMMANDS_HELP", "Chat", "ChatRole", "ChatService", "Command", "NoteKind", "ReplyStatus", "parse_command"]
