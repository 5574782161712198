"""A LINE Messaging API emulator (DESIGN.md §6): LINE's endpoints, limits, retry keys and faults, recorded.

``Emulator`` holds the state and the Python control API; ``serve`` runs it over HTTP in the current event
loop; ``create_app`` gives the ASGI app; ``python -m tagline_line_emulator`` runs it standalone.
"""

from tagline_line_emulator.app import EmulatorApp, create_app
from tagline_line_emulator.emulator import Answer, Call, Emulator, EmulatorConfig, Exchange
from tagline_line_emulator.endpoints import ENDPOINTS, RateLimit
from tagline_line_emulator.faults import Fault, FaultKind
from tagline_line_emulator.records import ReceivedRequest, fingerprint
from tagline_line_emulator.server import RunningEmulator, serve

__all__ = [
    "ENDPOINTS",
    "Answer",
    "Call",
    "Emulator",
    "EmulatorApp",
    "EmulatorConfig",
    "Exchange",
    "Fault",
    "FaultKind",
    "RateLimit",
    "ReceivedRequest",
    "RunningEmulator",
    "create_app",
    "fingerprint",
    "serve",
]
