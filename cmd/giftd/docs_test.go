package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// pendingDocs are pages linked before they land from another branch; a link
// to one is checked once the file exists.
var pendingDocs = map[string]bool{}

// TestDocs_LinksResolve: every relative link of README.md and docs/*.md
// points at a file of the repository, and its #anchor, if any, at a heading
// of that file (GitHub's rule: lowercase, spaces to -, punctuation dropped).
func TestDocs_LinksResolve(t *testing.T) {
	pages, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	pages = append(pages, filepath.Join(repoRoot, "README.md"))
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	for _, page := range pages {
		raw, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(string(raw), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, anchor, _ := strings.Cut(target, "#")
			path := page
			if file != "" {
				path = filepath.Join(filepath.Dir(page), file)
			}
			rel, _ := filepath.Rel(repoRoot, path)
			body, err := os.ReadFile(path)
			if err != nil {
				if pendingDocs[filepath.ToSlash(rel)] {
					t.Logf("%s links %s, not written yet (pending)", page, target)
					continue
				}
				t.Errorf("%s links %s: %v", page, target, err)
				continue
			}
			if anchor != "" && !hasAnchor(string(body), anchor) {
				t.Errorf("%s links %s: %s has no heading with anchor #%s", page, target, rel, anchor)
			}
		}
	}
}

// hasAnchor reports whether a heading of the markdown text md has anchor.
func hasAnchor(md, anchor string) bool {
	for _, line := range strings.Split(md, "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(title) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				b.WriteRune(r)
			}
		}
		if b.String() == anchor {
			return true
		}
	}
	return false
}

// TestDocs_NothingCitesTheOldSpecFolder: the protocol lives in docs/, so no
// source file may send a reader to the old spec folder outside the
// repository (../shared), which a clone lacks.
func TestDocs_NothingCitesTheOldSpecFolder(t *testing.T) {
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && path != repoRoot {
			return filepath.SkipDir
		}
		if d.IsDir() || !(strings.HasSuffix(path, ".go") || strings.HasSuffix(path, ".json") || strings.HasSuffix(path, ".md")) {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.Contains(string(b), "shared"+"/spec") { // split, or this file would match
			t.Errorf("%s cites the old spec folder (../shared); cite docs/ instead", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
