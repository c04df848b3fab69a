"""The shard scaler: keeps a Kinesis stream's open shard count matched to its load."""
