"""HTTP in and out: the Flask app and the review path, the gunicorn application and
worker, request framing, worker balance and CPU sizing, and the metrics they serve."""
