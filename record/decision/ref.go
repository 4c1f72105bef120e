package decision

import "strings"

// NormalizeRef returns a git ref in its full form, so that policies compare
// one spelling of a branch whatever CI system reported it:
//
//   - "refs/…" is already full and is kept;
//   - "origin/main" (Jenkins' GIT_BRANCH of a non-multibranch job: the
//     remote-tracking branch) and "remotes/origin/main" become
//     "refs/heads/main";
//   - "heads/main" and "tags/v1" (git's short forms) become
//     "refs/heads/main" and "refs/tags/v1";
//   - a commit ID (40 or 64 hex digits) is not a branch and is kept;
//   - any other non-empty name is a branch: "main" becomes "refs/heads/main"
//     (GitHub's deployment ref, GitLab's pipeline ref and Jenkins'
//     BRANCH_NAME are bare branch names).
//
// Tags reported by a bare name cannot be told from branches here: adapters
// that know a ref is a tag (GitLab's tag flag, GitHub's ref_type) pass
// "refs/tags/NAME". Surrounding white space is removed; "" stays "".
func NormalizeRef(ref string) string {
	ref = strings.TrimSpace(ref)
	switch {
	case ref == "", strings.HasPrefix(ref, "refs/"), isCommitID(ref):
		return ref
	case strings.HasPrefix(ref, "remotes/"):
		if _, branch, ok := strings.Cut(strings.TrimPrefix(ref, "remotes/"), "/"); ok && branch != "" {
			return "refs/heads/" + branch
		}
	case strings.HasPrefix(ref, "origin/") && len(ref) > len("origin/"):
		return "refs/heads/" + strings.TrimPrefix(ref, "origin/")
	case strings.HasPrefix(ref, "heads/") || strings.HasPrefix(ref, "tags/"):
		return "refs/" + ref
	}
	return "refs/heads/" + ref
}

// isCommitID reports whether s is a full SHA-1 or SHA-256 commit ID.
func isCommitID(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
