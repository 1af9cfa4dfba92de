package testfixtures

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// Build builds the streamhub binary into out with go build (-race when
// race is set), for the e2e tests and the bench tools. dir is a directory
// inside the module ("" for the current one).
func Build(dir, out string, race bool) error {
	args := []string{"build", "-o", out}
	if race {
		args = append(args, "-race")
	}
	args = append(args, "github.com/streamhub/streamhub")
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
	}
	return nil
}
