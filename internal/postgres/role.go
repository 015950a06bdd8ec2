package postgres

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
)

// ErrInvalidRole is returned for a DB_ROLE that is not allowed.
var ErrInvalidRole = errors.New("invalid DB_ROLE")

var rolePattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// reservedRoles are names that match the pattern but must never be the role
// jobs run under: superusers, PUBLIC, and SQL keywords that name roles.
var reservedRoles = map[string]bool{
	"postgres": true, "public": true, "none": true, "all": true, "user": true,
	"current_user": true, "session_user": true, "current_role": true,
}

// Role is a validated role name. The zero value is not valid; get one from
// ParseRole.
type Role struct{ name string }

// ParseRole checks name against the allow-list: it must match
// ^[a-z_][a-z0-9_]{0,62}$ and must not be a reserved or pg_ role. It runs no
// SQL.
func ParseRole(name string) (Role, error) {
	switch {
	case !rolePattern.MatchString(name):
		return Role{}, fmt.Errorf("%w %q: must match ^[a-z_][a-z0-9_]{0,62}$", ErrInvalidRole, name)
	case strings.HasPrefix(name, "pg_"):
		return Role{}, fmt.Errorf("%w %q: pg_ roles are reserved by PostgreSQL", ErrInvalidRole, name)
	case reservedRoles[name]:
		return Role{}, fmt.Errorf("%w %q: reserved role name", ErrInvalidRole, name)
	}
	return Role{name: name}, nil
}

// String returns the role's name.
func (r Role) String() string { return r.name }

// ident is the role quoted as an SQL identifier.
func (r Role) ident() string { return pgx.Identifier{r.name}.Sanitize() }
