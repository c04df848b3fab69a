"""The Pulumi program (see Pulumi.yaml); ``program.build`` is the stack."""
