package tools

import (
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
)

// This file owns the calculator's arithmetic: a recursive-descent parser
// that evaluates as it reads. Its input comes from a model, so it is
// bounded in length and in nesting, and every failure is a message the
// model can act on.
//
//	expression = term { ("+" | "-") term }
//	term       = unary { ("*" | "/" | "%") unary }
//	unary      = ("-" | "+") unary | power
//	power      = primary [ ("^" | "**") unary ]   right-associative: 2^3^2 = 2^9
//	primary    = number | "(" expression ")"
//	number     = digits [ "." digits ] [ ("e" | "E") [ "+" | "-" ] digits ]   (".5" too)
//
// Unary minus binds looser than power, as in mathematics: -2^2 = -4.

const (
	// maxExpressionLength bounds the input, in bytes.
	maxExpressionLength = 200
	// maxExpressionDepth bounds nesting: parentheses, signs and powers.
	maxExpressionDepth = 32
)

// evaluate computes expr.
func evaluate(expr string) (float64, error) {
	if len(expr) > maxExpressionLength {
		return 0, fmt.Errorf("the expression is %d characters long; the limit is %d", len(expr), maxExpressionLength)
	}
	p := &parser{src: expr}
	if p.skipSpace(); p.pos == len(p.src) {
		return 0, fmt.Errorf("the expression is empty")
	}
	v, err := p.expression()
	if err != nil {
		return 0, err
	}
	if p.skipSpace(); p.pos < len(p.src) {
		return 0, p.unexpected()
	}
	if v == 0 {
		v = 0 // no "-0"
	}
	return v, nil
}

type parser struct {
	src   string
	pos   int
	depth int
}

func (p *parser) expression() (float64, error) {
	v, err := p.term()
	if err != nil {
		return 0, err
	}
	for {
		p.skipSpace()
		op, at := p.peek(), p.pos
		if op != '+' && op != '-' {
			return v, nil
		}
		p.pos++
		w, err := p.term()
		if err != nil {
			return 0, err
		}
		if v, err = apply(op, v, w, at); err != nil {
			return 0, err
		}
	}
}

func (p *parser) term() (float64, error) {
	v, err := p.unary()
	if err != nil {
		return 0, err
	}
	for {
		p.skipSpace()
		op, at := p.peek(), p.pos
		if (op != '*' && op != '/' && op != '%') || p.power() {
			return v, nil
		}
		p.pos++
		w, err := p.unary()
		if err != nil {
			return 0, err
		}
		if v, err = apply(op, v, w, at); err != nil {
			return 0, err
		}
	}
}

func (p *parser) unary() (float64, error) {
	// Every way down (parentheses, signs, powers) comes through here.
	if p.depth++; p.depth > maxExpressionDepth {
		return 0, fmt.Errorf("the expression nests deeper than %d levels", maxExpressionDepth)
	}
	defer func() { p.depth-- }()
	p.skipSpace()
	switch p.peek() {
	case '-':
		p.pos++
		v, err := p.unary()
		return -v, err
	case '+':
		p.pos++
		return p.unary()
	}
	base, err := p.primary()
	if err != nil {
		return 0, err
	}
	p.skipSpace()
	if !p.power() {
		return base, nil
	}
	at := p.pos
	if p.peek() == '*' {
		p.pos++ // "**"
	}
	p.pos++
	exponent, err := p.unary()
	if err != nil {
		return 0, err
	}
	return apply('^', base, exponent, at)
}

// power reports whether a power operator ("^" or "**") is next.
func (p *parser) power() bool {
	return p.peek() == '^' || (p.peek() == '*' && p.pos+1 < len(p.src) && p.src[p.pos+1] == '*')
}

func (p *parser) primary() (float64, error) {
	p.skipSpace()
	c := p.peek()
	switch {
	case c == '(':
		open := p.pos
		p.pos++
		v, err := p.expression()
		if err != nil {
			return 0, err
		}
		if p.skipSpace(); p.peek() != ')' {
			if p.pos == len(p.src) {
				return 0, fmt.Errorf("the parenthesis at character %d is never closed", open+1)
			}
			return 0, p.unexpected()
		}
		p.pos++
		return v, nil
	case isDigit(c) || c == '.':
		return p.number()
	case p.pos == len(p.src):
		return 0, fmt.Errorf("the expression ends where a number was expected")
	default:
		return 0, p.unexpected()
	}
}

func (p *parser) number() (float64, error) {
	start := p.pos
	digits := p.digits()
	if p.peek() == '.' {
		p.pos++
		digits += p.digits()
	}
	if digits == 0 {
		return 0, fmt.Errorf("a number is expected at character %d", start+1)
	}
	if c := p.peek(); c == 'e' || c == 'E' {
		mark := p.pos
		p.pos++
		if c := p.peek(); c == '+' || c == '-' {
			p.pos++
		}
		if p.digits() == 0 {
			p.pos = mark
			return 0, p.unexpected()
		}
	}
	v, err := strconv.ParseFloat(p.src[start:p.pos], 64)
	if err != nil {
		return 0, fmt.Errorf("the number %s at character %d is too large", p.src[start:p.pos], start+1)
	}
	return v, nil
}

func (p *parser) digits() int {
	n := 0
	for isDigit(p.peek()) {
		p.pos++
		n++
	}
	return n
}

func (p *parser) skipSpace() {
	for p.pos < len(p.src) {
		switch p.src[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

// peek is the next byte, 0 at the end.
func (p *parser) peek() byte {
	if p.pos < len(p.src) {
		return p.src[p.pos]
	}
	return 0
}

// unexpected is the error for what stands at the current position.
func (p *parser) unexpected() error {
	if p.pos == len(p.src) {
		return fmt.Errorf("the expression ends too soon")
	}
	r, _ := utf8.DecodeRuneInString(p.src[p.pos:])
	return fmt.Errorf("unexpected %q at character %d", r, p.pos+1)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// apply computes a op b; at is the operator's position, for the message.
func apply(op byte, a, b float64, at int) (float64, error) {
	var v float64
	switch op {
	case '+':
		v = a + b
	case '-':
		v = a - b
	case '*':
		v = a * b
	case '/':
		if b == 0 {
			return 0, fmt.Errorf("division by zero at character %d", at+1)
		}
		v = a / b
	case '%':
		if b == 0 {
			return 0, fmt.Errorf("remainder of a division by zero at character %d", at+1)
		}
		v = math.Mod(a, b)
	case '^':
		v = math.Pow(a, b)
	}
	switch {
	case math.IsNaN(v):
		return 0, fmt.Errorf("the %c at character %d has no real result", op, at+1)
	case math.IsInf(v, 0):
		return 0, fmt.Errorf("the result of the %c at character %d is too large", op, at+1)
	}
	return v, nil
}

// formatNumber writes v without binary noise: integers exactly, other
// values rounded to 15 significant digits (0.1+0.2 is 0.3), in plain
// notation unless very large or very small.
func formatNumber(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) <= 1<<53 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	v, _ = strconv.ParseFloat(strconv.FormatFloat(v, 'g', 15, 64), 64)
	if a := math.Abs(v); a >= 1e-6 && a < 1e21 {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
