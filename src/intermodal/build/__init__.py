"""Pure front half of `intermodal build`: Dockerfile parsing, variable expansion, .dockerignore.

Nothing here touches the engine, a runtime or the file system beyond reading the build context, so the
executor can rely on the same answers BuildKit's own frontend gives for the same input.
"""
