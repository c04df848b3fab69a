"""The pipeline on one machine: kinesis-mock, DynamoDB Local, producer and the KCL consumer."""
