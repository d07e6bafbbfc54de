-- id: change.unauthorized
-- title: Production AI configuration changed by someone not authorized
-- category: change
-- severity: high
-- controls: CC6.1, CC6.3, CC8.1
-- description: A config.change was made by an actor that no [[change_authorization]]
--   entry allows for its resource_type in its environment. A change with no actor
--   is unauthorized too.
-- remediation: Review and, if needed, revert the change; remove the actor's write
--   access or add a reviewed authorization to the policy.
SELECT
  e.event_id AS subject,
  e.tenant_id,
  e.time,
  make_array(e.event_id) AS event_ids,
  concat(coalesce(nullif(e.actor_id, ''), 'an unknown actor'), ' changed ',
         coalesce(nullif(e.resource, ''), nullif(e.resource_type, ''), 'a resource'),
         ' in ', coalesce(nullif(e.environment, ''), 'an unnamed environment'), ' without authorization') AS summary
FROM events e
WHERE e.event_type = 'config.change'
  AND NOT EXISTS (
    SELECT 1 FROM policy_change_authorizations a
    WHERE a.actor_id = e.actor_id
      AND a.resource_type = e.resource_type
      AND a.environment = e.environment
  )
