-- id: retention.region
-- title: AI artifact stored outside the tenant's allowed regions
-- category: retention
-- severity: high
-- controls: C1.1
-- description: An artifact.stored put a prompt, output or derived item in a
--   storage_region that is not among its tenant's allowed regions.
-- remediation: Move the artifact to an allowed region and fix the store's region setting.
SELECT
  e.event_id AS subject,
  e.tenant_id,
  e.time,
  make_array(e.event_id) AS event_ids,
  concat(coalesce(e.artifact_kind, 'artifact'), ' ', coalesce(e.artifact_id, e.event_id), ' of tenant ', e.tenant_id,
         ' was stored in ', e.storage_region, ', outside its allowed regions') AS summary
FROM events e
WHERE e.event_type = 'artifact.stored'
  AND e.storage_region IS NOT NULL
  AND e.tenant_id IS NOT NULL
  AND NOT tenant_region_allowed(e.tenant_id, e.storage_region)
