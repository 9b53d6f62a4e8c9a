"""AdmissionReview in, response out: parsing, the images of an object, UPDATE rules,
waivers (exceptions, break-glass), the decision and its log line, and ``/mutate`` pinning."""
