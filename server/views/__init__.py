"""The analysis views: the registry, what each view computes, its table and its figure."""
