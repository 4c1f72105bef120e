package identity

import "testing"

func TestJenkinsJobFromURL(t *testing.T) {
	for _, tc := range []struct{ issuer, url, want string }{
		{"https://jenkins.example.com/oidc", "https://jenkins.example.com/job/payments/job/deploy/", "payments/deploy"},
		{"https://jenkins.example.com/oidc", "https://jenkins.example.com/job/nightly/", "nightly"},
		// A folder's credentials: the issuer is the folder's.
		{"https://jenkins.example.com/oidc/job/payments", "https://jenkins.example.com/job/payments/job/deploy/", "payments/deploy"},
		// A folder named "oidc".
		{"https://jenkins.example.com/oidc/job/oidc", "https://jenkins.example.com/job/oidc/job/deploy/", "oidc/deploy"},
		// Jenkins under a context path.
		{"https://ci.example.com/jenkins/oidc", "https://ci.example.com/jenkins/job/a/job/b/", "a/b"},
		{"https://ci.example.com/jenkins/oidc", "https://ci.example.com/other/job/a/", ""},
		// A folder named "job".
		{"https://ci.example.com/oidc", "https://ci.example.com/job/job/job/p/", "job/p"},
		// Multibranch branch jobs are named with the branch encoded once
		// ("feature%2Fx"), and their URL encodes that again.
		{"https://jenkins.example.com/oidc", "https://jenkins.example.com/job/shop/job/feature%252Fx/", "shop/feature%2Fx"},
		// A custom issuer: the trailing /job/ pairs are the name.
		{"https://keys.example.com/jenkins", "https://jenkins.example.com/ci/job/a/job/b/", "a/b"},
		{"https://jenkins.example.com/oidc", "https://jenkins.example.com/view/all/job/a/extra", ""},
		{"https://jenkins.example.com/oidc", "payments/deploy", ""},
		{"https://jenkins.example.com/oidc", "https://jenkins.example.com/", ""},
		{"https://jenkins.example.com/oidc", "https://jenkins.example.com/job//", ""},
		{"https://jenkins.example.com/oidc", "https://jenkins.example.com/job/%zz/", ""},
	} {
		if got := jenkinsJobFromURL(tc.issuer, tc.url); got != tc.want {
			t.Errorf("jenkinsJobFromURL(%q, %q) = %q, want %q", tc.issuer, tc.url, got, tc.want)
		}
	}
}

// FuzzJenkinsJobFromURL: the job URL comes from a claim template an
// administrator writes; nothing in it may panic, and a name is made of
// non-empty parts only.
func FuzzJenkinsJobFromURL(f *testing.F) {
	f.Add("https://jenkins.example.com/oidc", "https://jenkins.example.com/job/payments/job/deploy/")
	f.Add("https://ci.example.com/jenkins/oidc/job/x", "https://ci.example.com/jenkins/job/x/job/y/")
	f.Add("https://k.example/", "http://h/job/job/job/")
	f.Fuzz(func(t *testing.T, issuer, u string) {
		name := jenkinsJobFromURL(issuer, u)
		if name != "" && (name[0] == '/' || name[len(name)-1] == '/') {
			t.Fatalf("name %q from %q", name, u)
		}
	})
}
