# sample stage (filled in by its issue)
