"""The dead-letter tool: list, inspect and replay what consumers refused (``python -m tagline_platform.dlq``).

Dead letters are on ``<topic>.dlq.v1`` (:class:`tagline_contracts.deadletter.DeadLetter`, published by
:class:`tagline_platform.deadletters.DeadLetters`). :mod:`.records` is the pure part (names, selection,
replay headers, formatting), :mod:`.client` the Kafka I/O, :mod:`.cli` the commands.
"""
