# measure stage (filled in by its issue)
