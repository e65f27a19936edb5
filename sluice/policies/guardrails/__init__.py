"""Guardrail building blocks: checks that look at the text going to and coming from a model.

`pii` finds personal data and secrets with offline regular expressions and checksum validators
(emails, phone numbers, payment cards, IBANs, US SSNs, IP addresses, API keys and private keys);
`redact` replaces what it finds with placeholders, reversibly per request (a `Vault`, and a
`StreamRestorer` that puts the originals back into streamed answers) or irreversibly (`mask`);
`injection` scores text for prompt-injection attempts. Those three know nothing about requests,
keys or config; `engine` is the stage the gateway calls: policies, verdicts, and restoring
placeholders in answers and streams.
"""
