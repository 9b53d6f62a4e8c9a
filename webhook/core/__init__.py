"""The core every layer may import: errors, the image reference grammar, deadlines and
the offline pass, fair scheduling, parsing of untrusted JSON, secret redaction, failure
descriptions, and structured logging. It imports nothing else of trustgate."""
