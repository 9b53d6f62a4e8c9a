"""The engine: one image and the policies that govern it -> a Verdict.

``evaluation`` holds the ``Engine`` (orchestration: parse, match, run checks
within one deadline, fan out, memoise); ``verdict`` the frozen results it
records. It knows nothing of Kubernetes requests or HTTP.
"""

from webhook.engine.evaluation import ANSWER_RESERVE_SECONDS as ANSWER_RESERVE_SECONDS
from webhook.engine.evaluation import GRACE_SECONDS as GRACE_SECONDS
from webhook.engine.evaluation import Engine as Engine
from webhook.engine.evaluation import Resolver as Resolver
from webhook.engine.verdict import CheckResult as CheckResult
from webhook.engine.verdict import Outcome as Outcome
from webhook.engine.verdict import PolicyResult as PolicyResult
from webhook.engine.verdict import Verdict as Verdict
from webhook.engine.verdict import display as display
