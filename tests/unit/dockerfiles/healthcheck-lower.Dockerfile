FROM nginx
healthcheck   cmd    echo  hi  
