"""Loss functions and learning-rate schedules of the sparse global alignment (original module paths)."""
