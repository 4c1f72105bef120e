#!/bin/sh
# Points a self-managed GitLab instance's external pipeline validation at
# gatelog (an administrator's personal access token with the api scope).
# The same can be set with environment variables on the GitLab Rails nodes:
# EXTERNAL_VALIDATION_SERVICE_URL, EXTERNAL_VALIDATION_SERVICE_TOKEN,
# EXTERNAL_VALIDATION_SERVICE_TIMEOUT (gitlab_rails['env'] in gitlab.rb).
#
#   GITLAB_URL=https://gitlab.acme.example GITLAB_ADMIN_TOKEN=... \
#   GATELOG_URL=https://gatelog.acme.example:8443 \
#   VALIDATION_TOKEN_FILE=gitlab-validation-token ./instance-setting.sh
set -eu
: "${GITLAB_URL:?}" "${GITLAB_ADMIN_TOKEN:?}" "${GATELOG_URL:?}" "${VALIDATION_TOKEN_FILE:?}"
# The token goes through stdin, so it shows in no process list.
tr -d '\r\n' < "$VALIDATION_TOKEN_FILE" |
  curl -sSf --request PUT "$GITLAB_URL/api/v4/application/settings" \
    --header "PRIVATE-TOKEN: $GITLAB_ADMIN_TOKEN" \
    --data-urlencode "external_pipeline_validation_service_url=$GATELOG_URL/v1/adapters/gitlab" \
    --data-urlencode "external_pipeline_validation_service_token@-" \
    --data "external_pipeline_validation_service_timeout=5" > /dev/null
echo "external pipeline validation now asks $GATELOG_URL/v1/adapters/gitlab"
