"""Starting, stopping and describing the local clusters of one state folder (`isthmus local ...`)."""
