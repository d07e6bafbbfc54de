-- id: retention.expired
-- title: AI artifact kept past its retention period
-- category: retention
-- severity: medium
-- controls: C1.2, P4.2, P4.3
-- description: A stored artifact reached its deadline (stored time plus the
--   tenant's retention for its kind) with no artifact.deleted at or before the
--   deadline. A deletion after the deadline does not help.
-- remediation: Delete the artifact now and check the retention job for its kind.
SELECT
  artifact_id AS subject,
  tenant_id,
  deadline AS time,
  CASE WHEN deletion_event_id IS NULL THEN make_array(event_id)
       ELSE make_array(event_id, deletion_event_id) END AS event_ids,
  concat(coalesce(artifact_kind, 'artifact'), ' ', artifact_id, ' of tenant ', coalesce(tenant_id, '(none)'),
         CASE WHEN deleted_at IS NULL THEN ' was not deleted by its retention deadline'
              ELSE ' was deleted after its retention deadline' END) AS summary
FROM due_artifacts
WHERE deleted_at IS NULL OR deleted_at > deadline
