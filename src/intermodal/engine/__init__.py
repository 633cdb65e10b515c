"""The engine library every frontend calls: images, containers, volumes, networks; state and locks on disk."""
