"""The operator dashboard (``python -m worker web``): pages over the queue's SQL functions, HireFire's endpoint."""
