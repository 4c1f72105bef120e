// Package secretfile checks the files secrets are kept in (private keys,
// webhook secrets, tokens): they must be readable by their owner only,
// so that a secret never sits in a file other local users can read.
package secretfile

import (
	"fmt"
	"os"
)

// CheckOwnerOnly refuses a file readable, writable or executable by its
// group or others, naming the chmod that fixes it.
func CheckOwnerOnly(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s has permissions %04o; it must be readable by its owner only (chmod 600)", path, perm)
	}
	return nil
}
