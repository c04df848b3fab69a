"""Kinesis -> DynamoDB: the KCL 3 MultiLangDaemon running a Python record processor."""
