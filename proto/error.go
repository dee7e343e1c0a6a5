package pb

import "fmt"

// Error is a chat-level refusal carrying a stable client code. The state
// machine returns it, the server sends its code, and the Go client hands it
// back to callers, who branch with errors.As or errors.Is.
type Error struct {
	Code   Code
	Detail string
}

func (e *Error) Error() string {
	if e.Detail == "" {
		return e.Code.String()
	}
	return e.Code.String() + ": " + e.Detail
}

// Is makes errors.Is(err, &Error{Code: c}) match any *Error with code c.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && (t.Detail == "" || t.Detail == e.Detail)
}

// Errf returns an *Error with the given code and a formatted detail.
func Errf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Detail: fmt.Sprintf(format, args...)}
}

// ErrCode returns a bare *Error for matching with errors.Is.
func ErrCode(code Code) *Error { return &Error{Code: code} }
