module github.com/gatelog/gatelog

go 1.26
