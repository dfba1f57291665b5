"""``florence-tagger batch``: caption a whole S3 prefix with the gateway's pipeline, resumably."""
