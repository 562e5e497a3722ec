"""The domain: what a job is, what may run (job configs), and how text becomes a job."""
