package chat

import "testing"

// The apologies the AWS sample's orchestrator sends, character for character
// (bedrock-orchestrator-lambda translations/common.py, error_response).
func TestErrorTextMatchesTheSample(t *testing.T) {
	for _, tc := range []struct{ locale, want string }{
		{"en_US", "Sorry, I was not able to answer your question."},
		{"en", "Sorry, I was not able to answer your question."},
		{"fr_CA", "Désolé, je n\u2019ai pas pu répondre à votre question."},
		{"fr-FR", "Désolé, je n\u2019ai pas pu répondre à votre question."},
		{"zh_CN", "抱歉\uff0c我无法回答你的问题"},
		{"zh_HK", "抱歉\uff0c我無法回答你的問題"},
		{"zh-TW", "抱歉\uff0c我無法回答你的問題"},
		{"zh_SG", "抱歉\uff0c我無法回答你的問題"},
		{"de-DE", "Entschuldigung, ich konnte Ihre Frage nicht beantworten."},
		{"xx_YY", "Sorry, I was not able to answer your question."},
		{"", "Sorry, I was not able to answer your question."},
	} {
		if got := ErrorText(tc.locale); got != tc.want {
			t.Errorf("ErrorText(%q) = %q, want %q", tc.locale, got, tc.want)
		}
	}
}

func TestLanguage(t *testing.T) {
	for locale, want := range map[string]string{"fr_CA": "fr", "FR-ca": "fr", "en": "en", "zh_Hant-TW": "zh", "": ""} {
		if got := Language(locale); got != want {
			t.Errorf("Language(%q) = %q, want %q", locale, got, want)
		}
	}
}
