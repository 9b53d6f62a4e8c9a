"""The global configuration file (``trustgate.yaml``).

It holds what is not a policy: the default for images no policy governs, the
review deadline, reload cadence, and the sections later checks read (registries,
freshness, caches). It is read once, at start-up, into a frozen ``Config``.

``schema`` says what the file may contain, ``model`` holds the settings the
program reads, and ``loader`` turns the one into the other; ``credentials``
and ``registries`` read the sections of those names into what their users take.
"""

from webhook.config.loader import load_config as load_config
from webhook.config.loader import parse_config as parse_config
from webhook.config.model import DEFAULT_DEADLINE_SECONDS as DEFAULT_DEADLINE_SECONDS
from webhook.config.model import DEFAULT_MAX_BODY_BYTES as DEFAULT_MAX_BODY_BYTES
from webhook.config.model import DEFAULT_MAX_IMAGES as DEFAULT_MAX_IMAGES
from webhook.config.model import DEFAULT_REVIEW_THREADS as DEFAULT_REVIEW_THREADS
from webhook.config.model import DEFAULT_TUF_URL as DEFAULT_TUF_URL
from webhook.config.model import MAX_DEADLINE_SECONDS as MAX_DEADLINE_SECONDS
from webhook.config.model import ConditionsConfig as ConditionsConfig
from webhook.config.model import Config as Config
from webhook.config.model import NetworkConfig as NetworkConfig
from webhook.config.model import SigstoreConfig as SigstoreConfig
from webhook.config.schema import MAX_CONDITION_PROCESSES as MAX_CONDITION_PROCESSES
