-- id: logging.missing_response
-- title: AI request with no logged response
-- category: logging
-- severity: low
-- controls: CC7.2
-- description: An ai.request reached its deadline (its time plus
--   response_timeout_seconds) with no ai.response for its request_id at or before
--   the deadline: the audit trail has a gap.
-- remediation: Check that the service logs every response, errors included.
SELECT
  request_id AS subject,
  tenant_id,
  deadline AS time,
  make_array(event_id) AS event_ids,
  concat('request ', request_id, ' has no response logged by its deadline') AS summary
FROM due_requests
WHERE responded_at IS NULL OR responded_at > deadline
