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
// Who asks is the job, as the signed OIDC token says; nothing in this
// request claims an identity. The change author and build causes go in
// context.unverified, so policies can see but not trust them.
def call(Map config = [:]) {
    if (!config.action) {
        error('gatelogGate: action is required, e.g. gatelogGate(action: \'deploy\', environment: \'production\')')
    }
    def url = config.url ?: env.GATELOG_URL
    if (!url) {
        error('gatelogGate: set env.GATELOG_URL or pass url:')
    }

    def causes = currentBuild.getBuildCauses().collect { c ->
        [class: c._class, description: c.shortDescription, user_id: c.userId].findAll { it.value }
    }
    def attributes = [
        build_url   : env.BUILD_URL,
        build_number: env.BUILD_NUMBER,
        node        : env.NODE_NAME,
        commit      : env.GIT_COMMIT,
        change_id   : env.CHANGE_ID,
    ] + (config.attributes ?: [:])
    def request = [
        action  : config.action,
        resource: [
            system     : 'jenkins',
            kind       : 'job',
            name       : env.JOB_NAME,
            environment: config.environment ?: '',
            repository : env.GIT_URL ?: '',
            ref        : env.BRANCH_NAME ?: env.GIT_BRANCH ?: '',
            attributes : attributes.findAll { it.value != null },
        ],
        context : [
            unverified: [
                change_author: env.CHANGE_AUTHOR,
                causes       : causes,
            ].findAll { it.value },
        ],
        source  : [adapter: 'jenkins-shared-library', request_id: env.BUILD_TAG ?: ''],
    ]

    writeFile file: '.gatelog/request.json', text: groovy.json.JsonOutput.toJson(request)
    writeFile file: '.gatelog/decide.sh', text: libraryResource('gatelog/decide.sh')
    def status
    withCredentials([string(credentialsId: config.credentialsId ?: 'gatelog-oidc-token', variable: 'GATELOG_TOKEN')]) {
        withEnv(["GATELOG_URL=${url}"]) {
            status = sh(script: 'sh .gatelog/decide.sh .gatelog/request.json .gatelog/receipt.json', returnStatus: true)
        }
    }
    archiveArtifacts artifacts: '.gatelog/receipt.json', allowEmptyArchive: true
    if (status == 2) {
        error("gatelog denied ${config.action}${config.environment ? ' to ' + config.environment : ''}: see .gatelog/receipt.json")
    }
    if (status != 0) {
        error("gatelog gave no decision for ${config.action} (exit ${status}): blocked")
    }
    echo "gatelog allowed ${config.action}"
}
