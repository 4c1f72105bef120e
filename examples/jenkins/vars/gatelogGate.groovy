// gatelogGate asks gatelog whether this build may do something, and fails
// the build unless the answer is an allow that is in gatelog's log.
//
//   gatelogGate(action: 'deploy', environment: 'production')
//
// Options: action (required), environment, attributes (a map recorded with
// the request), url (default env.GATELOG_URL), credentialsId (default
// 'gatelog-oidc-token': an "OpenID Connect id token" credential of the
// Jenkins oidc-provider plugin, whose audience is gatelog).
//
// The step sends the build's own variables to gatelog's Jenkins adapter
// (POST /v1/adapters/jenkins), which turns them into a request: refs in full
// (GIT_BRANCH "origin/main" is refs/heads/main), causes and CHANGE_AUTHOR as
// unverified context. Who asks is the job, as the signed OIDC token says; the
// daemon refuses a JOB_NAME the token contradicts.
def call(Map config = [:]) {
    if (!config.action) {
        error('gatelogGate: action is required, e.g. gatelogGate(action: \'deploy\', environment: \'production\')')
    }
    def url = config.url ?: env.GATELOG_URL
    if (!url) {
        error('gatelogGate: set env.GATELOG_URL or pass url:')
    }

    def causes = currentBuild.getBuildCauses().collect { c ->
        [_class: c._class, shortDescription: c.shortDescription, userId: c.userId, userName: c.userName,
         upstreamProject: c.upstreamProject, upstreamBuild: c.upstreamBuild].findAll { it.value != null }
    }
    def payload = [
        action             : config.action,
        environment        : config.environment,
        JOB_NAME           : env.JOB_NAME,
        JOB_URL            : env.JOB_URL,
        BUILD_NUMBER       : env.BUILD_NUMBER,
        BUILD_URL          : env.BUILD_URL,
        BUILD_TAG          : env.BUILD_TAG,
        NODE_NAME          : env.NODE_NAME,
        JENKINS_URL        : env.JENKINS_URL,
        GIT_URL            : env.GIT_URL,
        GIT_BRANCH         : env.GIT_BRANCH,
        GIT_COMMIT         : env.GIT_COMMIT,
        BRANCH_NAME        : env.BRANCH_NAME,
        CHANGE_ID          : env.CHANGE_ID,
        CHANGE_URL         : env.CHANGE_URL,
        CHANGE_TARGET      : env.CHANGE_TARGET,
        CHANGE_AUTHOR      : env.CHANGE_AUTHOR,
        CHANGE_AUTHOR_EMAIL: env.CHANGE_AUTHOR_EMAIL,
        causes             : causes,
        attributes         : config.attributes,
    ].findAll { it.value }

    writeFile file: '.gatelog/request.json', text: groovy.json.JsonOutput.toJson(payload)
    writeFile file: '.gatelog/decide.sh', text: libraryResource('gatelog/decide.sh')
    // Each binding of the credential mints a fresh token, accepted once.
    // Exit 3 means this one was already used (two bindings in the same
    // second mint the same token): bind again a moment later.
    def status = 3
    for (int attempt = 1; attempt <= 3 && status == 3; attempt++) {
        if (attempt > 1) {
            sleep(time: 2, unit: 'SECONDS')
        }
        withCredentials([string(credentialsId: config.credentialsId ?: 'gatelog-oidc-token', variable: 'GATELOG_TOKEN')]) {
            withEnv(["GATELOG_URL=${url}"]) {
                status = sh(script: 'sh .gatelog/decide.sh .gatelog/request.json .gatelog/answer.json', returnStatus: true)
            }
        }
    }
    archiveArtifacts artifacts: '.gatelog/answer.json', allowEmptyArchive: true
    def reasons = ''
    if (fileExists('.gatelog/answer.json')) {
        try {
            reasons = new groovy.json.JsonSlurperClassic().parseText(readFile('.gatelog/answer.json')).reasons?.join('; ') ?: ''
        } catch (Exception ignored) {
            reasons = ''
        }
    }
    def what = "${config.action}${config.environment ? ' to ' + config.environment : ''}"
    if (status == 2) {
        error("gatelog denied ${what}: ${reasons}")
    }
    if (status != 0) {
        error("gatelog gave no decision for ${what} (exit ${status}): ${reasons}: blocked")
    }
    echo "gatelog allowed ${what}: ${reasons}"
}
