"""Claims jobs, runs them (process groups, timeouts, cancel, logs), fires schedules."""
