"""What `busline new` writes: the files of a new pipeline (and, later, of a new project)."""
