"""Valid sample bodies per collection and a typed filter for each (shared by API tests)."""

SAMPLES = {
    "aws_schedulers": {"name": "aws"},
    "compute_nodes": {"hostname": "h1", "pid": 12, "start_time": "2024-05-01 12:00:00.1",
                      "resources": {"num_cpus": 4, "memory_gb": 8.0}, "is_active": True},
    "compute_node_stats": {"hostname": "h1", "timestamp": "t", "stats": []},
    "events": {"category": "job", "message": "m"},
    "files": {"name": "f1", "path": "/data/f1"},
    "jobs": {"name": "j1", "command": "echo 1"},
    "job_process_stats": {"job_key": "1", "run_id": 1, "avg_cpu_percent": 1.5,
                          "max_cpu_percent": 2.5, "avg_rss": 10.0, "max_rss": 20.0,
                          "num_samples": 3, "timestamp": "t"},
    "local_schedulers": {"name": "l", "memory": "1g", "num_cpus": 2},
    "resource_requirements": {"name": "r1", "num_cpus": 2},
    "results": {"job_key": "1", "run_id": 1, "return_code": 0, "exec_time_minutes": 1.5,
                "completion_time": "t", "status": "done"},
    "scheduled_compute_nodes": {"scheduler_id": "77", "scheduler_config_id":
                                "slurm_schedulers__1/2", "status": "pending"},
    "slurm_schedulers": {"name": "s", "account": "acct", "nodes": 1, "walltime": "04:00:00"},
    "user_data": {"name": "u1", "is_ephemeral": False, "data": {"x": 1}},
}

#: collection -> (query param, query string value, field, typed value in the sample)
FILTERS = {
    "aws_schedulers": ("name", "aws", "name", "aws"),
    "compute_nodes": ("is_active", "true", "is_active", True),
    "compute_node_stats": ("hostname", "h1", "hostname", "h1"),
    "events": ("category", "job", "category", "job"),
    "files": ("path", "/data/f1", "path", "/data/f1"),
    "jobs": ("cancel_on_blocking_job_failure", "true", "cancel_on_blocking_job_failure", True),
    "job_process_stats": ("run_id", "1", "run_id", 1),
    "local_schedulers": ("num_cpus", "2", "num_cpus", 2),
    "resource_requirements": ("num_cpus", "2", "num_cpus", 2),
    "results": ("return_code", "0", "return_code", 0),
    "scheduled_compute_nodes": ("scheduler_id", "77", "scheduler_id", "77"),
    "slurm_schedulers": ("nodes", "1", "nodes", 1),
    "user_data": ("is_ephemeral", "false", "is_ephemeral", False),
}

#: A different value of the filtered field, for a document the filter must not match.
OTHER = {
    "aws_schedulers": "other", "compute_nodes": False, "compute_node_stats": "h2",
    "events": "worker", "files": "/data/f2", "jobs": False, "job_process_stats": 2,
    "local_schedulers": 3, "resource_requirements": 3, "results": 1,
    "scheduled_compute_nodes": "78", "slurm_schedulers": 2, "user_data": True,
}
