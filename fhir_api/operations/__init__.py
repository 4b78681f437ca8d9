"""Routes of the ``$operations``, one module per operation (each names its OperationDefinition)."""
