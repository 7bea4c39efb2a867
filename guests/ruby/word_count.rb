# Word count: the most frequent words of a text, as an agent's summarising tool.
#
# Input:  UTF-8 text; an optional first line "top: N" sets how many words to list (default 5).
# Output: {"words": total, "distinct": n, "top": [[word, count], ...]} (ties in order of first appearance).
require "json"

STOP = %w[a an and are as at be by for from in is it of on or that the this to was with].freeze

def handle(request)
  text = request.dup.force_encoding(Encoding::UTF_8)
  raise ArgumentError, "the input is not UTF-8 text" unless text.valid_encoding?
  top = 5
  if (first = text[/\Atop:\s*(\d+)\s*\n/, 1])
    top = first.to_i
    text = text.sub(/\A.*\n/, "")
  end
  words = text.downcase.scan(/[[:alpha:]']+/)
  counts = Hash.new(0)
  words.each { |w| counts[w] += 1 unless STOP.include?(w) }
  JSON.generate({ "words" => words.size, "distinct" => counts.size, "top" => counts.sort_by.with_index { |(_, c), i| [-c, i] }.first(top) })
end
