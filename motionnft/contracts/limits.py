"""Hard upper bounds of the wire contract, the same for every deployment.

A service's own limits (settings such as `REWARD_API_MAX_GROUPS`) may be lower, never higher. These
exist so that validation fails fast: a list longer than its bound is one error, not one per item.
"""

MAX_GROUPS = 256  # groups per score request
MAX_EDITS = 256  # edits per group
MAX_PAIRS = 1024  # pairs per compare request
MAX_RUBRICS = 16  # rubric names per judge request
MAX_TEXT_CHARS = 100_000  # an instruction or id, characters
