"""The queue runtime: the claim loop, completions, the handler contract and the database layer."""
