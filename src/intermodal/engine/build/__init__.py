"""`intermodal build`: run a Dockerfile (parsed by `intermodal.build`) into an image, with a build cache."""
