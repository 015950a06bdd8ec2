// Package compose holds no code: its tests parse the repository's
// docker-compose.yml with the Compose specification's own loader and check
// it against the programs' configuration (internal/config), so that the
// deployment cannot drift from the environment names, commands, flags and
// defaults the programs really have. They need no Docker engine.
package compose
