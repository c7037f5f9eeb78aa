"""Local emulators of the Salesforce REST API and Amplitude's /groupidentify endpoint.

Both are real HTTPS servers on loopback, with a certificate authority generated at start
(clients trust it through ``REQUESTS_CA_BUNDLE``). They serve the tests, ``make demo`` and
``make bench``; see ``emulators.salesforce`` and ``emulators.amplitude``.
"""
