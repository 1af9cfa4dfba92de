package main

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// configReference renders the configuration reference (docs/configuration.md)
// from the commented default config.yml: one table per top-level section,
// one row per key with its default and its comment. Keys that follow a
// commented key without a comment of their own share its row, as they
// share its comment in the file. The file is the single source: a test
// checks that the committed reference matches it.
func configReference(yml []byte) (string, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(yml, &doc); err != nil {
		return "", err
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return "", fmt.Errorf("config.yml: not a mapping")
	}
	var b bytes.Buffer
	b.WriteString("# Configuration reference\n\n")
	b.WriteString("Every key of `config.yml`, with its default and what it does. `streamhub` with no `--config`\n")
	b.WriteString("runs with exactly these values; a file of your own needs only the keys it changes\n")
	b.WriteString("(`streamhub config default` prints the whole file, `streamhub config check FILE` validates one).\n\n")
	b.WriteString("This page is generated from the comments of `config.yml` by `streamhub config reference`\n")
	b.WriteString("(`go run . config reference > docs/configuration.md`); a test fails when they differ.\n\n")
	b.WriteString("The **reload** column says what a changed key does on a reload (SIGHUP, `POST /api/v1/config/reload`,\n")
	b.WriteString("or the file saved; see [operations.md](operations.md)): **hot** keys apply without dropping anyone,\n")
	b.WriteString("**restart** keys keep their running value and the log says `needs restart: <keys>`. Hot keys reach:\n\n")
	for _, c := range keyClasses {
		if c.hot {
			fmt.Fprintf(&b, "- `%s`: %s\n", c.key, c.how)
		}
	}
	root := doc.Content[0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		fmt.Fprintf(&b, "\n## `%s`\n\n", k.Value)
		if c := commentText(k.HeadComment); c != "" && v.Kind != yaml.MappingNode {
			b.WriteString(c + "\n\n")
		}
		b.WriteString("| key | default | reload | meaning |\n|---|---|---|---|\n")
		var rows []refRow
		collectRows(k.Value, k, v, &rows)
		for _, r := range rows {
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", strings.Join(r.keys, ", "), strings.Join(r.defaults, ", "), reloadCell(r.keys), r.text)
		}
	}
	return b.String(), nil
}

type refRow struct {
	keys, defaults []string
	text           string
}

// collectRows adds the leaves under v (whose key node is k, at path).
func collectRows(path string, k, v *yaml.Node, rows *[]refRow) {
	if v.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(v.Content); i += 2 {
			ck, cv := v.Content[i], v.Content[i+1]
			collectRows(path+"."+ck.Value, ck, cv, rows)
		}
		return
	}
	key := "`" + path + "`"
	def := "`" + tableEscape(flowValue(v)) + "`"
	text := tableEscape(commentText(k.HeadComment))
	if text == "" && len(*rows) > 0 {
		last := &(*rows)[len(*rows)-1]
		if sameParent(last.keys[len(last.keys)-1], key) {
			last.keys = append(last.keys, key)
			last.defaults = append(last.defaults, def)
			return
		}
	}
	*rows = append(*rows, refRow{keys: []string{key}, defaults: []string{def}, text: text})
}

func sameParent(a, b string) bool {
	pa := a[:strings.LastIndex(a, ".")+1]
	pb := b[:strings.LastIndex(b, ".")+1]
	return pa == pb
}

// flowValue writes a leaf as YAML on one line.
func flowValue(v *yaml.Node) string {
	if v.Kind == yaml.ScalarNode {
		if v.Value == "" {
			return `""`
		}
		return v.Value
	}
	c := *v
	c.Style = yaml.FlowStyle
	c.HeadComment, c.LineComment, c.FootComment = "", "", ""
	for _, n := range c.Content {
		n.Style |= yaml.FlowStyle
		n.HeadComment, n.LineComment, n.FootComment = "", "", ""
	}
	out, err := yaml.Marshal(&c)
	if err != nil {
		return v.Value
	}
	return strings.TrimSpace(string(out))
}

// commentText joins a YAML comment's lines without their "#".
func commentText(c string) string {
	var parts []string
	for _, l := range strings.Split(c, "\n") {
		l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "#"))
		if l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, " ")
}

// tableEscape keeps text inside one Markdown table cell, with <path> shown
// as written rather than taken for HTML.
func tableEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "<", "&lt;", ">", "&gt;").Replace(s)
}

// reloadCell says hot or restart for a row's keys (written `key`), each
// key's class when they differ.
func reloadCell(keys []string) string {
	classes := make([]string, len(keys))
	for i, k := range keys {
		classes[i] = "restart"
		if isHot(strings.Trim(k, "`")) {
			classes[i] = "hot"
		}
	}
	if !slices.ContainsFunc(classes, func(c string) bool { return c != classes[0] }) {
		return classes[0]
	}
	return strings.Join(classes, ", ")
}
