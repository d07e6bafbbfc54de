-- id: change.unreviewed
-- title: AI configuration change shipped without independent review
-- category: change
-- severity: medium
-- controls: CC8.1
-- description: A config.change in an environment listed in approval_required_in
--   has no approved_by, an empty one, or one equal to its own actor.
-- remediation: Get the change reviewed by someone other than its author, and
--   require approval in the deploy pipeline.
SELECT
  e.event_id AS subject,
  e.tenant_id,
  e.time,
  make_array(e.event_id) AS event_ids,
  concat(coalesce(nullif(e.resource, ''), nullif(e.resource_type, ''), 'a resource'), ' was changed in ',
         coalesce(nullif(e.environment, ''), 'an unnamed environment'),
         CASE WHEN e.approved_by IS NULL OR e.approved_by = '' THEN ' with no approval'
              ELSE ' approved only by its own author' END) AS summary
FROM events e
JOIN policy_approval_required r ON r.environment = e.environment
WHERE e.event_type = 'config.change'
  AND (e.approved_by IS NULL OR e.approved_by = '' OR e.approved_by = e.actor_id)
