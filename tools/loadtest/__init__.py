"""The load-test tool: concurrent scripted conversations against a trio-voice server, with protocol checks.

``python -m tools.loadtest --help`` for the command line; from Python, build a :class:`Plan` and call
:func:`run_level`. Modules: ``plan`` (the script), ``client`` (one conversation), ``dialects`` (what the
client sends over ``/v1/voice`` or ``/v1/realtime``), ``checks`` and ``realtime`` (the sans-I/O protocol
checkers of each), ``run`` (one level of N sessions), ``report`` (JSON and percentiles),
``plot`` (PNG), ``procstat`` (CPU and RSS from /proc), ``resume`` (``--drop-rate``: drop a connection
mid-reply and resume it), ``cli``.
"""

from .checks import ProtocolChecker as ProtocolChecker
from .checks import Violation as Violation
from .plan import Plan as Plan
from .plan import Question as Question
from .plan import load_questions as load_questions
from .realtime import RealtimeChecker as RealtimeChecker
from .report import Recorder as Recorder
from .report import TurnSample as TurnSample
from .report import build_report as build_report
from .report import percentiles as percentiles
from .run import run_level as run_level
