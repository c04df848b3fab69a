"""What the local stack's services call in AWS (the emulators), for the IAM call contract.

- ``calls``: one call summarized (service, API, operation, the parameters naming resources),
  counted in a ``CallLog`` that each process writes to its own JSON file.
- ``botocore_plugin``: the Python services' calls, through botocore's event hooks.
- ``tap``: the KCL's Java SDK calls, as the emulators receive them (a wire tap: a TCP proxy
  that forwards every byte unchanged and reads the requests, HTTP/1.1 and cleartext HTTP/2).
"""
