// Package ui is the auditor console: a single-page web app, embedded in the
// binary, that reads decisions from the daemon and verifies each one in the
// browser (web/verify.js, on WebCrypto) against log and signer keys the
// auditor pins, independently of the daemon's own Go verification code.
//
// The files under web/ are plain ES modules, HTML and CSS, served as they
// are: there is no build step, so go build alone produces a working console.
package ui

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed web
var files embed.FS

// contentSecurityPolicy keeps the console to its own origin: no inline
// script, no CDN, no external fonts, nothing framed.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Files is the console's file tree (index.html at the root).
func Files() fs.FS {
	sub, err := fs.Sub(files, "web")
	if err != nil {
		// web is embedded at compile time, so this cannot happen.
		panic(err)
	}
	return sub
}

// Handler serves the console's files from the root; mount it under a
// prefix with http.StripPrefix.
func Handler() http.Handler {
	fsrv := http.FileServerFS(Files())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		fsrv.ServeHTTP(w, r)
	})
}
